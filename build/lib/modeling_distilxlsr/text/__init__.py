"""Text: the Brazilian Portuguese normaliser and CTC vocabulary, numbers as spoken, IPA phones, espeak-ng."""
