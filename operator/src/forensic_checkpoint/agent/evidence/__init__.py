"""The node's evidence work: custody facts, age encryption, the export to S3-compatible storage
(and its worker), and the retention keeper (docs/evidence.md)."""
