"""Modal forms over a screen: confirm, launch, chat setup and settings, device choice, transcripts, help."""
