package agent

import (
	"strings"

	"github.com/fmagent/fmagent/api"
)

// watcher is one Watch in progress: a buffered channel the publisher fills
// without ever blocking. A watcher whose buffer is full is dropped (its
// Watch ends with an error) rather than waited for: the publisher runs
// under the core's lock, on the path of every table change.
type watcher struct {
	prefix string
	ch     chan api.Event
	gone   chan struct{} // closed when dropped
	err    error         // why it was dropped; set before gone is closed
}

// broadcast hands ev to every watcher whose prefix matches. mu held.
func (a *agent) broadcast(ev *api.Event) {
	for w := range a.watchers {
		if !strings.HasPrefix(ev.Entity.Name, w.prefix) {
			continue
		}
		select {
		case w.ch <- *ev:
		default:
			a.m.watchDropped.Inc()
			a.log.Warn("dropping a watcher that fell behind", "prefix", w.prefix, "buffered", cap(w.ch))
			a.dropWatcher(w, api.Errorf(api.ErrBusy, "watch dropped: the client fell %d events behind", cap(w.ch)))
		}
	}
}

// dropWatcher ends w with err. mu held.
func (a *agent) dropWatcher(w *watcher, err error) {
	if _, ok := a.watchers[w]; !ok {
		return
	}
	delete(a.watchers, w)
	w.err = err
	close(w.gone)
}
