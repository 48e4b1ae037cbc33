"""Use cases both faces call: import, identify, analyse, score, select."""
