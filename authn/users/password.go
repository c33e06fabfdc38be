package users

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// ErrPasswordTooLong is a password longer than MaxPasswordBytes.
var ErrPasswordTooLong = errors.New("users: password too long")

// HashPassword returns the bcrypt hash of password at cost (0 means
// DefaultCost). Passwords longer than MaxPasswordBytes are refused rather
// than silently truncated by bcrypt, and empty passwords are refused.
func HashPassword(password []byte, cost int) (string, error) {
	if cost == 0 {
		cost = DefaultCost
	}
	if cost < MinCost || cost > MaxCost {
		return "", fmt.Errorf("users: cost %d out of range [%d, %d]", cost, MinCost, MaxCost)
	}
	if len(password) == 0 {
		return "", errors.New("users: empty password")
	}
	if len(password) > MaxPasswordBytes {
		return "", fmt.Errorf("%w: password is %d bytes; bcrypt uses at most %d", ErrPasswordTooLong, len(password), MaxPasswordBytes)
	}
	h, err := bcrypt.GenerateFromPassword(password, cost)
	if err != nil {
		return "", fmt.Errorf("users: hash password: %w", err)
	}
	return string(h), nil
}
