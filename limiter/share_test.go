package limiter

import (
	"math"
	"testing"
)

func TestAllocate(t *testing.T) {
	idle, busy := demand{}, demand{hungry: true}
	little := demand{used: 0.05}
	floor3 := reserveFraction / 3
	for _, tc := range []struct {
		name string
		d    []demand
		want []float64
	}{
		{"alone idle", []demand{idle}, []float64{1}},
		{"alone busy", []demand{busy}, []float64{1}},
		{"all idle split equally", []demand{idle, idle, idle}, []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}},
		{"all busy split equally", []demand{busy, busy, busy}, []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}},
		{"one busy takes all but the floors", []demand{idle, busy, idle}, []float64{floor3, 1 - 2*floor3, floor3}},
		{"a light user keeps twice its use", []demand{little, busy, busy}, []float64{0.1, 0.45, 0.45}},
		{"a heavy user that is not hungry gets at most an equal part", []demand{{used: 0.9}, busy}, []float64{0.5, 0.5}},
		{"nobody hungry: the rest goes to all", []demand{little, idle}, []float64{0.1 + 0.445, 0.455}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := make([]float64, len(tc.d))
			allocate(tc.d, out)
			sum := 0.0
			for i, x := range out {
				sum += x
				if math.Abs(x-tc.want[i]) > 1e-9 {
					t.Errorf("share %d = %.4f, want %.4f (all %v)", i, x, tc.want[i], out)
				}
			}
			if math.Abs(sum-1) > 1e-9 {
				t.Errorf("shares sum to %v", sum)
			}
		})
	}
}

// TestAllocateSumsToOne checks the sum over many mixes of demand.
func TestAllocateSumsToOne(t *testing.T) {
	uses := []float64{0, 0.001, 0.01, 0.1, 0.3, 0.7, 2}
	for n := 1; n <= 6; n++ {
		d := make([]demand, n)
		out := make([]float64, n)
		for seed := range 500 {
			x := seed
			for i := range d {
				d[i] = demand{used: uses[x%len(uses)], hungry: x%3 == 0}
				x /= 3
			}
			allocate(d, out)
			sum := 0.0
			for _, s := range out {
				if s < reserveFraction/float64(n)-1e-12 {
					t.Fatalf("%v: share %v below the floor", d, s)
				}
				sum += s
			}
			if math.Abs(sum-1) > 1e-9 {
				t.Fatalf("%v: shares %v sum to %v", d, out, sum)
			}
		}
	}
}
