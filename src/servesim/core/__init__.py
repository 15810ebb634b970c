"""Plain data types shared by every layer: requests, step plans, RNG streams, errors."""
