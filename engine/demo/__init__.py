"""The demo: a tiny model, tokenizer, dataset and config built offline, and its run; imports every other engine domain."""
