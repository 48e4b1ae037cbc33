"""Expert regions: the Qt-free editor, its undoable commands, label sets."""
