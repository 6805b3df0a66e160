"""One runner per node kind: the node's code never knows where it runs."""
