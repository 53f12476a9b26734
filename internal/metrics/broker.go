package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cmbs/cmbs/cmbs"
)

// BrokerSource is what BrokerCollector reads at every scrape: the CMBS
// broker's own counters (the ones /-/status shows), so nothing is counted
// twice.
type BrokerSource interface {
	Stats() cmbs.Stats
	RunningLayers() []cmbs.RunningLayer
}

// BrokerCollector exposes a broker's counters as Prometheus metrics.
type BrokerCollector struct {
	src BrokerSource

	sent, received, failed, duplicates, inFlight *prometheus.Desc
	stored, executed, forwarded, rejected        *prometheus.Desc
	discoveries, discoveryFailures               *prometheus.Desc
	layersRunning                                *prometheus.Desc
	transport                                    map[string]*prometheus.Desc
}

// NewBrokerCollector returns a collector reading src.
func NewBrokerCollector(src BrokerSource) *BrokerCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "broker", name), help, labels, nil)
	}
	t := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "transport", name), help+" Summed over the running sockets of each layer; a layer's sockets start from 0 when it starts.", []string{"layer"}, nil)
	}
	return &BrokerCollector{
		src:               src,
		sent:              d("deliveries_sent_total", "Deliveries this server made that the receiver acknowledged (sends and L4 forwards), by layer.", "layer"),
		received:          d("deliveries_received_total", "CMBS messages this server's layer sockets accepted (repeats included), by layer.", "layer"),
		failed:            d("deliveries_failed_total", "Deliveries that did not reach a receiver (no answer, refused, unresolved or stopped target), by layer.", "layer"),
		duplicates:        d("duplicates_total", "Received messages dropped as already handled, by layer.", "layer"),
		inFlight:          d("deliveries_in_flight", "Deliveries waiting for their receiver's acknowledgement now, by layer.", "layer"),
		stored:            d("messages_stored_total", "Received messages stored as message entities."),
		executed:          d("messages_executed_total", "Messages whose execution was recorded."),
		forwarded:         d("forwards_total", "L4 forwards acknowledged by the next member."),
		rejected:          d("rejected_total", "Envelopes answered with an error because they were not CMBS messages."),
		discoveries:       d("discovery_runs_total", "check_neighbors runs."),
		discoveryFailures: d("discovery_failures_total", "Sockets check_neighbors runs could not probe."),
		layersRunning:     d("layers_running", "Layer sockets bound by local members, by layer.", "layer"),
		transport: map[string]*prometheus.Desc{
			"connections":    t("connections_total", "ZMTP connections accepted."),
			"requests":       t("requests_total", "Well-formed requests received."),
			"replies":        t("replies_total", "Replies sent."),
			"malformed":      t("malformed_total", "Messages that did not parse as an envelope."),
			"handler_errors": t("handler_errors_total", "Handler calls that failed."),
			"overloaded":     t("overloaded_total", "Requests refused because every handler slot was busy."),
			"send_errors":    t("send_errors_total", "Replies that could not be sent."),
			"rejected":       t("rejected_connections_total", "TCP connections dropped before ZMTP."),
		},
	}
}

// Describe implements prometheus.Collector.
func (c *BrokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sent, c.received, c.failed, c.duplicates, c.inFlight,
		c.stored, c.executed, c.forwarded, c.rejected, c.discoveries, c.discoveryFailures, c.layersRunning} {
		ch <- d
	}
	for _, d := range c.transport {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *BrokerCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	type layerStats struct {
		running int
		t       [8]uint64
	}
	per := map[string]*layerStats{}
	for _, l := range cmbs.Layers() {
		name := string(l)
		per[name] = &layerStats{}
		counter(c.sent, s.Sent[name], name)
		counter(c.received, s.Received[name], name)
		counter(c.failed, s.Failed[name], name)
		counter(c.duplicates, s.DuplicatesByLayer[name], name)
		gauge(c.inFlight, float64(s.InFlight[name]), name)
	}
	counter(c.stored, s.Stored)
	counter(c.executed, s.Executed)
	counter(c.forwarded, s.Forwarded)
	counter(c.rejected, s.Rejected)
	counter(c.discoveries, s.Discoveries)
	counter(c.discoveryFailures, s.DiscoveryFailures)
	for _, rl := range c.src.RunningLayers() {
		ls := per[string(rl.Layer)]
		if ls == nil {
			continue
		}
		ls.running++
		ts := rl.Transport
		for i, v := range []uint64{ts.Connections, ts.Requests, ts.Replies, ts.Malformed, ts.HandlerErrors, ts.Overloaded, ts.SendErrors, ts.RejectedConns} {
			ls.t[i] += v
		}
	}
	keys := []string{"connections", "requests", "replies", "malformed", "handler_errors", "overloaded", "send_errors", "rejected"}
	for _, l := range cmbs.Layers() {
		name := string(l)
		ls := per[name]
		gauge(c.layersRunning, float64(ls.running), name)
		for i, k := range keys {
			counter(c.transport[k], ls.t[i], name)
		}
	}
}
