"""How events become the bytes a stream sends: JSON frames or HTML fragments."""
