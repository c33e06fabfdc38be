package statetest

import "testing"

// StartSentinel is exercised, failover included, by the Sentinel tests of
// package state.

func TestStartCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := StartCluster(t, 3)
	slot, err := c.KeySlot("{user1000}.following")
	if err != nil || slot != 3443 {
		t.Errorf("KeySlot({user1000}.following) = %d, %v; want 3443", slot, err)
	}
}
