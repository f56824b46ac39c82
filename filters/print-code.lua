--[[
print-code.lua — what the print edition (PDF) shows of each code cell.

`code-fold` folds code on the website only: in the PDF every visible cell would print its
code, most of it plumbing (the first render made 83 pages).  In print, a cell shows its
outputs, and its code only when the cell asks for it:

    ```{python}
    #| classes: print-code
    model.compile(optimizer=..., loss=..., metrics=[...])
    ```

Quarto puts a cell's `classes` on the cell's div.  Applied to the Typst format only
(_quarto.yml, `format: typst: filters:`, at `pre-ast`, before Quarto turns cells into its
own nodes), it sees what Quarto's Jupyter engine wrote:

    ::: {.cell .print-code}
    ``` {.python .cell-code}
    ...
    ```
    ::: {.cell-output .cell-output-display}
    ...
    :::
    :::

and drops each `.cell-code` block of a `.cell` div that lacks `.print-code`.  Code shown
on purpose outside cells (```python blocks) is left alone.  Tested with Pandoc in
tests/test_book.py (test_print_code_*).
]]

local function is_cell_code(block)
  return block.t == "CodeBlock" and block.classes:includes("cell-code")
end

function Div(div)
  if div.classes:includes("cell") and not div.classes:includes("print-code") then
    div.content = div.content:filter(function(block) return not is_cell_code(block) end)
    return div
  end
end
