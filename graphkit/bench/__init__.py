"""The look-alike benchmark: which descriptor predicts the feature that steers."""
