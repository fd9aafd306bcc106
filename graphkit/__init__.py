"""graphkit: dictionary features of language models as a graph, ranked by TWERA."""

__version__ = "0.1.0"
