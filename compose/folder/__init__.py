"""The adapter folder on disk: save and load, in our format and PEFT's."""
