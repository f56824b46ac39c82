--[[
french-spacing.lua — French typography: a line never breaks before « : ; ? ! » » nor after « «.

French puts a space before the high punctuation (`Exactitude : 97 %`) and inside the
guillemets; typed as an ordinary space, it lets a line start with « : » or end with « « »,
on the website and in the PDF alike (Typst and browsers break at any ordinary space).  This
filter makes those spaces no-break: U+00A0 before « : » and « » » and after « « », U+202F
(narrow) before « ; ? ! ».  Only prose is touched: code, inline code and math are left alone.

Applied to both formats (_quarto.yml, `format: html/typst: filters:`) and to the PDF proxy
(tools/pdfproxy.py); tested with Pandoc in tests/test_book.py (test_french_spacing_*).
]]

local NBSP, NNBSP = "\u{00A0}", "\u{202F}"
local BEFORE = { [":"] = NBSP, [";"] = NNBSP, ["?"] = NNBSP, ["!"] = NNBSP, ["»"] = NBSP }

local function starts_with_high_punctuation(text)
  return BEFORE[text:sub(1, 1)] or BEFORE[text:sub(1, 2)]  -- "»" is two bytes in UTF-8
end

function Inlines(inlines)
  for i = 1, #inlines - 1 do
    local here, next = inlines[i], inlines[i + 1]
    if (here.t == "Space" or here.t == "SoftBreak") and next.t == "Str" then
      local space = starts_with_high_punctuation(next.text)
      if space then
        inlines[i] = pandoc.Str(space)
      end
    elseif here.t == "Str" and here.text:sub(-2) == "«" and (next.t == "Space" or next.t == "SoftBreak") then
      inlines[i + 1] = pandoc.Str(NBSP)
    end
  end
  return inlines
end
