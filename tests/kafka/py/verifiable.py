"""Runs confluent-kafka's kafkatest verifiable clients (`confluent_kafka/kafkatest/
verifiable_producer.py` and `verifiable_consumer.py`, shipped in the wheel) unchanged but for two
Python 3 fixes they need, for cli/tests/kafka_python_groups.rs.

  verifiable.py producer ARGS...   # the arguments of verifiable_producer.py
  verifiable.py consumer ARGS...   # the arguments of verifiable_consumer.py

The fixes, applied to their shared `VerifiableClient` before the script runs:
  - `set_config` iterates `args.iteritems()` (Python 2); here it iterates `items()`.
  - `send` writes each event with `json.dumps`, which cannot encode the bytes keys and values of
    `producer_send_success` and `record_data`; here bytes are decoded as UTF-8 first.
Their output is what the scripts print: one JSON event per line on stdout (`producer_send_success`,
`producer_send_error`, `records_consumed`, `offsets_committed`, `partitions_assigned`,
`partitions_revoked`, `record_data` with --verbose, `shutdown_complete`), their logs on stderr.
"""

import os
import runpy
import sys

import confluent_kafka

KAFKATEST = os.path.join(os.path.dirname(confluent_kafka.__file__), "kafkatest")
SCRIPTS = {"producer": "verifiable_producer.py", "consumer": "verifiable_consumer.py"}


def text(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def patch():
    sys.path.insert(0, KAFKATEST)
    import verifiable_client  # noqa: E402 (the scripts import it by this name)

    cls = verifiable_client.VerifiableClient
    original_send = cls.send

    class Items(dict):
        def iteritems(self):
            return iter(self.items())

    original_set_config = cls.set_config

    def set_config(conf, args):
        return original_set_config(conf, Items(args))

    def send(self, d):
        return original_send(self, {k: text(v) for k, v in d.items()})

    cls.set_config = staticmethod(set_config)
    cls.send = send


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in SCRIPTS:
        sys.exit(f"usage: {sys.argv[0]} producer|consumer ARGS...")
    script = os.path.join(KAFKATEST, SCRIPTS[sys.argv[1]])
    patch()
    sys.argv = [script] + sys.argv[2:]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
