-- luacheck's settings for the dissector (ci/test's lint step): Wireshark 4.0 embeds Lua 5.2,
-- and calc.lua uses the API Wireshark gives its Lua plugins (the globals below); the modules
-- in calc/ use none of it.
std = "lua52"
max_line_length = 120
files["calc.lua"] = {
  read_globals = { "Proto", "ProtoField", "ProtoExpert", "Pref", "Field", "Listener", "NSTime", "DissectorTable",
                   "Dissector", "ByteArray", "base", "expert", "frametype", "dissect_tcp_pdus",
                   "register_postdissector" },
}
