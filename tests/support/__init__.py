"""What the tests share: fakes, stand-ins for remote services, and fixture plugins."""
