"""XTuner itself: built-in configs, reading and editing them, checks, prompt templates, converters, version shims; imports only the base modules."""
