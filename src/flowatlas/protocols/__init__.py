"""Wire-format facts shared by the decoders (collect/) and the encoders (export/)."""
