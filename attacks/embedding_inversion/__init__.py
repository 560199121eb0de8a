"""The embedding-inversion attack family: face images and soft biometrics from (protected) face embeddings."""

from bench.attacks.embedding_inversion import face_cnn  # noqa: F401  (registers "face-cnn", Shahreza et al.)
from bench.attacks.embedding_inversion import attribute  # noqa: F401  (registers "attribute-inference")
