pytest_plugins = ["tests.fixtures.emulator", "tests.fixtures.kafka", "tests.fixtures.tls"]
