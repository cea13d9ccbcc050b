"""Dataset files: reading them as a stream of records, their formats, record-precise reports, images, the self-cognition generator; imports only the base modules."""
