-- Read only: the queue gauges.
return gauges()
