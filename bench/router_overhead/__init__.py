"""Router overhead benchmark: the real LiteLLM proxy, with the operator's config, in front of a stand-in engine.

See bench/README.md ("Router overhead") and `python -m bench.router_overhead --help`.
"""
