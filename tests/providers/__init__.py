"""The provider contract suite, run against every provider."""
