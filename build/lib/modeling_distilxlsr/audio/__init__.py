"""Audio in: finding utterances (folders, manifests, datasets) with lengths from headers, decoding, cropping, batching,
streaming, and on-the-fly corruption."""
