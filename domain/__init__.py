"""Quick, Draw! without TFX: finding, reading, checking, simplifying and rendering drawings,
strict JSON, exact retrieval and its metrics, and the registry's on-disk format. Shared by the
pipeline's components and by serving; imports no TFX, Beam or TFMA (only models/ and common/)."""
