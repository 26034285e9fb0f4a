"""Many gameframe processes acting as one server, on a shared store (Redis): directory, leases, node bus."""
