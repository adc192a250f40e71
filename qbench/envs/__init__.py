"""Tasks: Gymnasium ids plus tuned hyperparameters, and the observation encodings the engine understands."""
