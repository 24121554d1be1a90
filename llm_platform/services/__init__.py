"""HTTP services: the jobs REST API (`llmp serve-api`)."""
