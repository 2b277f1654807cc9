"""A mitmdump addon for the load comparison: keeps the last 1,000 flows (with
their bodies) in memory, as leanproxy's request log ring keeps the last 1,000
exchanges, so that the debugging proxy is measured doing the same job.
mitmdump itself prints one line per flow (flow_detail=1): its log."""

import collections


class Ring:
    def __init__(self):
        self.flows = collections.deque(maxlen=1000)

    def response(self, flow):
        self.flows.append(flow)


addons = [Ring()]
