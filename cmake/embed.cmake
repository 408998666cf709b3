# Writes OUT: a header holding the text of IN as `inline constexpr char VAR[]` (cmake -P).
file(READ "${IN}" content)
file(WRITE "${OUT}.tmp" "// Generated from ${NAME} by cmake/embed.cmake: do not edit.\n#pragma once\nnamespace edge::admin {\ninline constexpr char ${VAR}[] = R\"EDGE_EMBED(${content})EDGE_EMBED\";\n}  // namespace edge::admin\n")
file(RENAME "${OUT}.tmp" "${OUT}")
