"""marathon-pullsecret-controller: keeps private-registry pull credentials working on Marathon."""
