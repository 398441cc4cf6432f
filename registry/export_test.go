package registry

// HookPoint names a point of a Registration's work where a test may stop
// it, to make an interleaving certain instead of likely.
type HookPoint = hookPoint

// Hook points.
const (
	// HookRewritten: a re-registration has written the key under its new
	// lease and not yet recorded that lease (the write lock is held).
	HookRewritten = hookRewritten
	// HookUpdateWaits: Update is about to wait for the write lock.
	HookUpdateWaits = hookUpdateWaits
	// HookLost: the registration turned Lost and has not yet started to
	// register again.
	HookLost = hookLost
)

// WithHook calls h at every hook point, on the goroutine that reaches it.
func WithHook(h func(HookPoint)) Option {
	return func(o *options) { o.hook = h }
}
