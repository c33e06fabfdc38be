package users
import ("testing";"time";"golang.org/x/crypto/bcrypt")
func TestB(t *testing.T){ h,_:=bcrypt.GenerateFromPassword([]byte("x"),10); s:=time.Now(); for range 5 {bcrypt.CompareHashAndPassword(h,[]byte("y"))}; t.Log((time.Since(s)/5)) }
