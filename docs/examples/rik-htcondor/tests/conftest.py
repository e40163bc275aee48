pytest_plugins = ["rik.testing.fixtures"]  # rik_jupyter, fake_scheduler
