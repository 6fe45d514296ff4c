"""Write src/attnlab/core/components.json, the registry's index of attnlab's components, from their
signatures (see attnlab.core.registry). Run it after changing a component's constructor; the tests
fail while the index is out of date.

    python tools/write_component_index.py
"""

from attnlab.core.registry import write_index

if __name__ == "__main__":
    print(f"wrote {write_index()}")
