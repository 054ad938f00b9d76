package domain

import "time"

// Beijing is UTC+8, the zone of WeChat Pay's times (time_end,
// success_time) and of the ledger's calendar days. A fixed zone: China has
// no daylight saving, and it needs no tzdata on the machine.
var Beijing = time.FixedZone("CST", 8*60*60)
