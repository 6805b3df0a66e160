"""The rules a spec is checked with beyond its own text, as the firm deploys it (pools,
promotion policy, kinds' parameters), and loading a spec under them."""
