"""Model families: prepare (image -> tensors) and decode (tensors -> poses)."""
