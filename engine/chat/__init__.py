"""Chat: what to chat with, loading it, device placement, the session, decoding, KV cache, transcripts, images, LLaVA; imports engine.runs, engine.xtuner, engine.gpu."""
