package healthcheck

// damper is the damped state of one check. The first result is taken at
// once; after that the state changes only after rise passing (or fall
// failing) results in a row. A result that agrees with the state resets
// the count.
type damper struct {
	known   bool
	healthy bool
	streak  int // results in a row that disagree with healthy
}

// observe adds one result and reports whether the state changed.
func (d *damper) observe(ok bool, rise, fall int) bool {
	if !d.known {
		d.known, d.healthy, d.streak = true, ok, 0
		return true
	}
	if ok == d.healthy {
		d.streak = 0
		return false
	}
	d.streak++
	need := fall
	if ok {
		need = rise
	}
	if d.streak < need {
		return false
	}
	d.healthy, d.streak = ok, 0
	return true
}
