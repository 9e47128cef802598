"""Cell images: plate discovery, image reading, channel maps and multi-channel encoders."""
