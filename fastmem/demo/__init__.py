"""The app's helpers: presets, share documents, explanations, charts."""
