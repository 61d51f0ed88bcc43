"""Text: the Brazilian Portuguese normaliser and CTC vocabulary, numbers as spoken, IPA phones, the espeak-ng binding."""
