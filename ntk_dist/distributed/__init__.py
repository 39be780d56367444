"""Distribution over Ray: the runtime (local loopback instance or a cluster), training
batches as Ray tasks, and Gram matrices computed in tiles."""
