"""pytest plugin (fixtures) for reward authors."""
