from bridge.security.passwords import hash_password, needs_rehash, unmatchable_hash, verify_password


def test_hash_verifies_only_the_right_password():
    stored = hash_password("correct horse battery")
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterY", stored)
    assert "correct" not in stored


def test_same_password_hashes_differently():
    assert hash_password("same password") != hash_password("same password")


def test_garbage_hash_is_a_no():
    assert not verify_password("x", "not-a-hash")
    assert not verify_password("x", "md5$1$2$3$4$5")


def test_the_unmatchable_hash_matches_nothing_and_costs_a_real_verification():
    stored = unmatchable_hash()
    assert not verify_password("", stored) and not verify_password("any password", stored)
    assert stored.split("$")[:4] == hash_password("x").split("$")[:4]  # the same parameters
    assert not needs_rehash(stored)
