"""TFX components and the data, metrics and registry code they use; imports only models/."""
