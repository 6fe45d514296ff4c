"""LightningModules: what is optimised and measured. Models arrive built; tasks never name one."""
